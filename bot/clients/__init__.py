"""Clients of the outside services: WeChat (wechat.py), WeCom group bots (wecom.py), WeChat Pay
v3 (wechatpay.py), and the posters and charts drawn for them (poster.py)."""
