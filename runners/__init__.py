"""msewatch.runners"""
