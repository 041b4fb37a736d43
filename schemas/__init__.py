"""msewatch.schemas"""
