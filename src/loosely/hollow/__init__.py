"""loosely.hollow"""
