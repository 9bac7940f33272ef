"""loosely.broker"""
