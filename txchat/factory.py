"""The hub as Autobahn builds connections from it: with L{ChatProtocol}.

Its own module so that neither the hub nor the protocol imports the other: the protocol asks
the hub's gate and hands messages to the hub, the hub sees its members through L{Member}.
"""

from __future__ import annotations

from txchat.hub import ChatHub
from txchat.protocol import ChatProtocol


class ChatFactory(ChatHub):
    protocol = ChatProtocol
