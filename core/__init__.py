"""The domain of huzhu: models, rules and services. No Flask, no WeChat, no HTTP."""
