"""podium.models"""
