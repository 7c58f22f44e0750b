"""Creates ItemPage item-1 .. item-N under the default site's root page (idempotent), then prints
`id<TAB>slug<TAB>path<TAB>url_path` for every item page, for the checker."""
from django.core.management.base import BaseCommand
from wagtail.models import Page, Site

from items.models import ItemPage


class Command(BaseCommand):
    help = "Seed item pages item-1..item-N"

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=100)
        parser.add_argument("--ids", default="")

    def handle(self, *args, **opts):
        site = Site.objects.get(is_default_site=True)
        home = site.root_page.specific
        made = 0
        for n in range(1, opts["items"] + 1):
            slug = f"item-{n}"
            if Page.objects.filter(slug=slug).exists():
                continue
            words = " ".join(["lorem", "ipsum", "dolor", "sit", "amet"] * (n % 7 + 1))
            home.add_child(instance=ItemPage(title=f"Item {n}", slug=slug, number=n, body=words))
            made += 1
        rows = Page.objects.filter(slug__startswith="item-").order_by("id")
        lines = [f"{p.id}\t{p.slug}\t{p.path}\t{p.url_path}" for p in rows]
        if opts["ids"]:
            with open(opts["ids"], "w") as f:
                f.write("\n".join(lines) + "\n")
        self.stdout.write(f"{made} item pages made, {len(lines)} in all")
