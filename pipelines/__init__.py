"""msewatch.pipelines"""
