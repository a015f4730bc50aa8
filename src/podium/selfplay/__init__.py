"""podium.selfplay"""
