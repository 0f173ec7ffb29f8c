"""Adapters: the Flask app, the WeChat and WeChat Pay clients, group bots, scheduler, CLI, and
the local WeChat emulator."""
