"""dalaba's Telegram side: chat-channel implementation and the conversational bot."""
