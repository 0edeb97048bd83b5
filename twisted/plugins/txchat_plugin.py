from twisted.application.service import ServiceMaker

txchat = ServiceMaker(
    "txchat", "txchat.tap", "A real-time web chat: the page and its WebSocket on one port.", "txchat"
)
