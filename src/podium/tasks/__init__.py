"""podium.tasks"""
