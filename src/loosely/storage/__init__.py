"""loosely.storage"""
