from msewatch.cli import main

raise SystemExit(main())
