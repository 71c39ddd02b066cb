"""Recruiter mailings through SendGrid: plan (Thompson draws), compose (Mail Send v3 bodies),
send (the real client, retries), and the exactly-once state machine; plus the unsubscribe and
recruiter pages, and the ``mailing``, ``decisions`` and ``scheduler`` commands.

Engine code never imports ``variants``: rendering is injected (:class:`composer.Renderers`).
"""
