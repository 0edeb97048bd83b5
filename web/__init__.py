"""The chat page, shipped as package data so an installed txchat finds it from any directory."""
