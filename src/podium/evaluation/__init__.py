"""podium.evaluation"""
