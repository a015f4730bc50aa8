"""podium.cards"""
