"""The payment side: Stripe webhooks in, ledger commands out, saved cards charged for top-ups.

See docs/PAYMENTS.md. Public entry points: `services.payments.http.PaymentRoutes` (HTTP) and
`services.payments.consumer.run_payments` (the `payments` component).
"""
