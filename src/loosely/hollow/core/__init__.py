"""loosely.hollow.core"""
