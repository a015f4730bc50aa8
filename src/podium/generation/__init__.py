"""podium.generation"""
