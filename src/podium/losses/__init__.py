"""podium.losses"""
