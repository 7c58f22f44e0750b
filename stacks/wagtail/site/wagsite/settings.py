# The vpath Wagtail stack (stacks/wagtail): a minimal Wagtail site on PostgreSQL over TCP.
# Everything that differs per machine comes from the environment that stack.sh sets.
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "vpath-wagtail-stack-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
WAGTAIL_SITE_NAME = "vpath wagtail"
WAGTAILADMIN_BASE_URL = "http://localhost"

INSTALLED_APPS = [
    "items",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

# No session, CSRF or message middleware on the page views: an anonymous GET touches only the pages.
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "wagsite.urls"
WSGI_APPLICATION = "wagsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("WAGTAIL_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("WAGTAIL_DB_PORT", "15432"),
        "NAME": os.environ.get("WAGTAIL_DB_NAME", "wagtail"),
        "USER": os.environ.get("WAGTAIL_DB_USER", "wagtail"),
        "PASSWORD": os.environ.get("WAGTAIL_DB_PASS", "vpath-wagtail-pass"),
        # a new connection (and PostgreSQL backend process) per request unless WAGTAIL_CONN_MAX_AGE says otherwise
        "CONN_MAX_AGE": int(os.environ.get("WAGTAIL_CONN_MAX_AGE", "0")),
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(BASE_DIR, "static")
MEDIA_ROOT = os.path.join(BASE_DIR, "media")
MEDIA_URL = "/media/"
WAGTAILSEARCH_BACKENDS = {"default": {"BACKEND": "wagtail.search.backends.database"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
