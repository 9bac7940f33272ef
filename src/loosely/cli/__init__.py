"""loosely.cli"""
