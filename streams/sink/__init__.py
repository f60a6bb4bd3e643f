"""The alert sink: the alerts topic delivered to a webhook, retried until accepted."""
