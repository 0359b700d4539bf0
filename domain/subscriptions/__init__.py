"""Subscriptions in: customer and subscription webhooks from Chargebee, Stripe and Paddle
become Accounts and Account Plans, projections of the event log."""
