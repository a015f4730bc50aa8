"""podium.merging"""
