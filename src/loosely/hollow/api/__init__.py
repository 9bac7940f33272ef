"""loosely.hollow.api"""
