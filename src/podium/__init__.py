"""podium: recipes behind open leaderboard-topping models, as one toolkit."""

__version__ = "0.1.0"
