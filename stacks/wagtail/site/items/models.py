from django.db import models
from wagtail.models import Page


class ItemPage(Page):
    """One seeded item: /item-N/. Its body never names another item."""

    number = models.IntegerField(default=0)
    body = models.TextField(blank=True)
