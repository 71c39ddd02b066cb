"""What comes back: the SendGrid Event Webhook — verify, parse, dedupe, apply outcomes, suppress."""
