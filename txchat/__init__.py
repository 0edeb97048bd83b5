"""txchat: a real-time web chat server on Twisted and Autobahn."""

__version__ = "0.2.0"
