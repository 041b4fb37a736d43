from msewatch.runners.cli import main

raise SystemExit(main())
