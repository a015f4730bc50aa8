"""podium.training"""
