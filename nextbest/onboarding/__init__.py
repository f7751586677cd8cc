"""Bring your own bank: onboard a bank's own tables onto Nextbest by configuration (see docs/onboarding.md)."""
