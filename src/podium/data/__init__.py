"""podium.data"""
