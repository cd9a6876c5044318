"""Pelican settings for the benchmark peer: the minimal theme's pages, nothing more.

Paths that depend on the corpus (content, output, cache) and the cache switches come from
bench/run.py on the command line; everything else that shapes the output is here.
"""

SITENAME = "Broadsheet benchmark"
THEME = "theme"  # bench/peers/pelican/theme, relative to this file
SITEURL = "https://example.org"
TIMEZONE = "UTC"
DEFAULT_LANG = "en"

# The stories' YAML front matter is read by pelican-yaml-metadata (PyPI), through the small
# local plugin that maps Broadsheet's field names onto Pelican's and writes the weekly issues.
PLUGIN_PATHS = ["plugins"]
PLUGINS = ["broadsheet_fields"]
BENCH_YAML_C_LOADER = True  # PyYAML's C loader, as Broadsheet uses (see the plugin)

SLUGIFY_SOURCE = "basename"  # a story's URL is its file name, as in Broadsheet
ARTICLE_URL = "stories/{slug}/"
ARTICLE_SAVE_AS = "stories/{slug}/index.html"
TAG_URL = "topics/{slug}/"
TAG_SAVE_AS = "topics/{slug}/index.html"
TAGS_SAVE_AS = "topics/index.html"
PAGINATION_PATTERNS = (
    (1, "{url}", "{save_as}"),
    (2, "{base_name}/page/{number}/", "{base_name}/page/{number}/index.html"),
)
DEFAULT_PAGINATION = 20
PAGINATED_TEMPLATES = {"tag": 20}
DIRECT_TEMPLATES = ["index", "tags"]

# Nothing the other tools do not make: no category, author or archive pages, no sitemap.
CATEGORY_SAVE_AS = ""
CATEGORIES_SAVE_AS = ""
AUTHOR_SAVE_AS = ""
AUTHORS_SAVE_AS = ""
ARCHIVES_SAVE_AS = ""
PAGE_SAVE_AS = ""
DRAFT_SAVE_AS = ""
STATIC_PATHS: list[str] = []

# The site's RSS and Atom feeds, the latest 50 stories with their content.
FEED_ALL_ATOM = "atom.xml"
FEED_ALL_RSS = "feed.xml"
CATEGORY_FEED_ATOM = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None
TRANSLATION_FEED_ATOM = None
FEED_MAX_ITEMS = 50
RSS_FEED_SUMMARY_ONLY = False

JINJA_ENVIRONMENT = {"trim_blocks": True, "lstrip_blocks": True, "autoescape": True}

# Issue numbers count ISO weeks from this Monday, like Broadsheet's issues.epoch.
BENCH_EPOCH = "2021-01-04"
HOME_STORIES = 12
HOME_ISSUES = 8
