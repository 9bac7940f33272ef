"""loosely.views"""
