"""podium.judging"""
