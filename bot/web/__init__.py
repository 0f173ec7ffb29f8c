"""The web side: the Flask app factory (app.py), the WeChat webhook (webhook.py) and its inbox
(inbox.py), WeChat Pay's payment notify (pay_notify.py), the claim photos for reviewers
(review_photos.py). A module here with a Flask blueprint `bp` is registered by the app."""
