"""What the gateway tells, and asks, the systems around it about each call: webhooks signed per
the Standard Webhooks specification.
"""
