"""Development tools, never imported by production code: the emulator of WeChat, WeChat Pay
and WeCom (emulator/), the villager's chat client (chat.py), sample claim photos
(claim_samples.py) and `huzhu demo` (demo.py with its scenes in scenes/)."""
