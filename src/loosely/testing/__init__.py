"""loosely.testing"""
