"""loosely.protocol"""
