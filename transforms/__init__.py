"""msewatch.transforms"""
