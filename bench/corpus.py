#!/usr/bin/env python3
"""A deterministic benchmark corpus of N stories in Broadsheet's real content format.

The stories look like the real ones (content/met-police-live-facial-recognition.md): a YAML
front matter block of about 270 lines on average (nested `provider`, 1-4 `topics` drawn from a
long-tailed set of 80 tech topics, `images` metadata, 10-35 `related` items from other outlets,
each with its own provider and images, a `secured` blob), then a few paragraphs of Markdown.
Publish times are spread over four years, so a weekly digest has about 200 issues, and some
related items are other stories of the corpus, as in a real digest. The generator writes the
format by hand (not with a YAML dumper) so the layout, quoting and key order match what
curators and the importer write.

The same N and seed always give byte-identical files: every story draws from its own random
generator seeded by (seed, index), and nothing depends on the clock, hash seeds or the
platform. Besides content/, it writes a site.yaml for Broadsheet and corpus.json, a manifest
that bench/run.py reads (the weeks that have stories, the story to edit, line counts).

Usage: python bench/corpus.py N [--out DIR] [--seed S]
(by default into /tmp/broadsheet-bench/corpus-N-seedS, the folder bench/run.py reuses)
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import itertools
import json
import random
import re
import shutil
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

EPOCH = datetime(2021, 1, 4, tzinfo=UTC)  # a Monday: issue 1 of the weekly digest
SPAN_DAYS = 4 * 365
DEFAULT_WORKDIR = Path("/tmp/broadsheet-bench")  # bench/run.py's default --workdir
NEW_STORY = "bench-new-story"  # the slug of the story run.py adds for the new-story rebuild

# Ordered by popularity: topic k is drawn with weight 1 / k**ZIPF_S.
TOPICS = (
    "AI", "Security", "Apple", "Google", "Startups", "Microsoft", "Privacy", "Regulation",
    "Cloud", "Smartphones", "Amazon", "Open Source", "Meta", "Cybersecurity", "Chips",
    "Electric Vehicles", "Social Media", "Machine Learning", "Gaming", "Funding", "Tesla",
    "Android", "Space", "Antitrust", "Crypto", "Nvidia", "Data Centers", "Semiconductors",
    "Robotics", "Streaming", "Developer Tools", "Programming Languages", "Linux", "Browsers",
    "5G", "Quantum Computing", "Surveillance", "Biometrics", "Computer Vision", "Ransomware",
    "Autonomous Vehicles", "Wearables", "Batteries", "E-commerce", "Fintech", "Health Tech",
    "Climate Tech", "Energy", "Telecom", "Broadband", "Satellites", "AR/VR", "Drones",
    "Supply Chain", "Labor", "Layoffs", "IPOs", "Acquisitions", "Education", "Policing",
    "Elections", "Misinformation", "Content Moderation", "Copyright", "Open Data", "Databases",
    "Kubernetes", "Rust", "Python", "JavaScript", "WebAssembly", "Accessibility", "Smart Home",
    "Cameras", "Audio", "Retro Computing", "Right to Repair", "Standards", "Encryption",
    "Chip Design",
)
ZIPF_S = 1.07

PROVIDERS = (
    ("The Verge", "theverge.com"), ("Ars Technica", "arstechnica.com"),
    ("TechCrunch", "techcrunch.com"), ("Wired", "wired.com"), ("Reuters", "reuters.com"),
    ("Bloomberg", "bloomberg.com"), ("New York Times", "nytimes.com"),
    ("The Guardian", "theguardian.com"), ("BBC News", "bbc.co.uk"), ("Engadget", "engadget.com"),
    ("ZDNet", "zdnet.com"), ("The Register", "theregister.com"), ("CNBC", "cnbc.com"),
    ("Forbes", "forbes.com"), ("Financial Times", "ft.com"), ("9to5Mac", "9to5mac.com"),
    ("Android Police", "androidpolice.com"), ("Tom's Hardware", "tomshardware.com"),
    ("AnandTech", "anandtech.com"), ("VentureBeat", "venturebeat.com"),
    ("MIT Technology Review", "technologyreview.com"), ("Axios", "axios.com"),
    ("Politico", "politico.com"), ("The Information", "theinformation.com"),
    ("Bleeping Computer", "bleepingcomputer.com"), ("Krebs on Security", "krebsonsecurity.com"),
    ("The Next Web", "thenextweb.com"), ("Gizmodo", "gizmodo.com"), ("CNET", "cnet.com"),
    ("Mashable", "mashable.com"), ("Protocol", "protocol.com"), ("Fast Company", "fastcompany.com"),
    ("Business Insider", "businessinsider.com"), ("The Wall Street Journal", "wsj.com"),
    ("Washington Post", "washingtonpost.com"), ("Nikkei Asia", "asia.nikkei.com"),
    ("South China Morning Post", "scmp.com"), ("Le Monde", "lemonde.fr"),
    ("Heise Online", "heise.de"), ("Golem", "golem.de"), ("LWN", "lwn.net"),
    ("InfoQ", "infoq.com"), ("The New Stack", "thenewstack.io"),
    ("IEEE Spectrum", "spectrum.ieee.org"),
    ("Electrek", "electrek.co"), ("Space.com", "space.com"), ("SpaceNews", "spacenews.com"),
    ("Light Reading", "lightreading.com"), ("Fierce Wireless", "fiercewireless.com"),
    ("Dark Reading", "darkreading.com"), ("SecurityWeek", "securityweek.com"),
    ("The Record", "therecord.media"), ("Rest of World", "restofworld.org"),
    ("Biometric Update", "biometricupdate.com"), ("Tech Xplore", "techxplore.com"),
    ("Quartz", "qz.com"), ("Slate", "slate.com"), ("Vice", "vice.com"),
    ("PCWorld", "pcworld.com"), ("Macworld", "macworld.com"),
)

COMPANIES = (
    "Apple", "Google", "Microsoft", "Amazon", "Meta", "Nvidia", "Intel", "AMD", "Qualcomm",
    "Samsung", "TSMC", "OpenAI", "Anthropic", "IBM", "Oracle", "Salesforce", "Netflix", "Spotify",
    "Tesla", "Rivian", "SpaceX", "Arm", "Cloudflare", "GitHub", "Mozilla", "Signal", "Uber",
    "Shopify", "Stripe", "Huawei", "Xiaomi", "Sony", "Nintendo", "Valve", "Red Hat", "Canonical",
    "the EU", "the FTC", "the FCC", "Ofcom", "the CNIL", "the Met Police", "a US senator",
    "researchers", "a start-up", "regulators", "a coalition of rights groups",
)
VERBS = (
    "unveils", "launches", "delays", "cancels", "expands", "investigates", "fines", "sues",
    "acquires", "bans", "tests", "rolls out", "open-sources", "patches", "defends", "drops",
    "doubles down on", "rethinks", "quietly updates", "warns about", "teams up on", "wins",
)
THINGS = (
    "a new {t} strategy", "its {t} roadmap", "a {t} chip", "{t} rules", "a {t} probe",
    "its biggest {t} push yet", "a {t} lawsuit", "the {t} feature users asked for",
    "a {t} flaw", "a {t} deal worth $%d million", "{t} plans for Europe", "a {t} pilot",
    "its {t} team", "a {t} standard", "{t} pricing", "a {t} beta",
)
TAILS = (
    "", "", "", " after criticism", " in Europe", " amid a backlash", " for developers",
    " ahead of schedule", " as sales slow", ", report says", " in the UK", " for the first time",
    ": what it means", " after a year of delays", " despite privacy concerns",
)
ACTIONS = ("unveil", "launch", "delay", "cancel", "expand", "open up", "test", "roll out")
SENTENCES = (
    "{c} said on {day} that it would {v} {x}, according to people familiar with the plans.",
    "The move follows months of pressure from customers and regulators over {t}.",
    "Analysts expect the change to reach most users within {n} weeks.",
    "Critics argue that the company has not explained how the data will be stored or shared.",
    "The announcement comes as rivals race to ship comparable {t} products.",
    "In a statement, a spokesperson said the company “takes these concerns seriously”.",
    "Documents seen by reporters suggest the project has been in the works since {y}.",
    "Shares rose {n}% in early trading after the news.",
    "The {t} market is expected to grow to ${n} billion by {y2}, one forecast says.",
    "Engineers found the problem during a routine audit and fixed it within {n} days.",
    "Lawmakers in {place} are weighing similar measures.",
    "The company declined to say how many people were affected.",
    "Early benchmarks show a {n}% improvement over the previous generation.",
    "Privacy advocates called the decision “a step in the right direction, but not enough”.",
)
PLACES = ("Brussels", "Washington", "London", "California", "Berlin", "Tokyo", "Seoul", "Delhi")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
ASPECTS = ((16, 9), (3, 2), (4, 3), (191, 100), (1, 1))
AN = re.compile(r"\ba ([AEIOU])")  # "a AI chip" -> "an AI chip"


@dataclass(frozen=True)
class Head:
    """What other stories need to know about one story: enough to cite it as related."""

    index: int
    slug: str
    title: str
    excerpt: str
    published: datetime
    url: str
    provider: tuple[str, str]
    quality: int
    image: tuple[str, int, int]


def story_rng(seed: int, index: int, part: str) -> random.Random:
    """One generator per story and part, so each story is independent of N and of the others."""
    return random.Random(f"broadsheet-bench:{seed}:{index}:{part}")


def zipf_cum_weights(count: int) -> list[float]:
    """Cumulative weights of a Zipf-like law: few topics carry most stories, many are rare."""
    return list(itertools.accumulate(1 / (k + 1) ** ZIPF_S for k in range(count)))


TOPIC_WEIGHTS = zipf_cum_weights(len(TOPICS))
PROVIDER_WEIGHTS = zipf_cum_weights(len(PROVIDERS))


def slugify(text: str) -> str:
    """Lowercase letters, digits and single hyphens, at most ~60 characters, cut at a word."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(slug) > 60:
        slug = slug[:60].rsplit("-", 1)[0]
    return slug


def quote(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are a subset of YAML's)."""
    return json.dumps(text, ensure_ascii=False)


def make_title(rng: random.Random, topic: str) -> str:
    """A headline such as 'Nvidia delays a Chips probe in Europe'."""
    thing = rng.choice(THINGS).replace("{t}", topic)
    if "%d" in thing:
        thing %= rng.randrange(20, 900)
    title = f"{rng.choice(COMPANIES)} {rng.choice(VERBS)} {thing}{rng.choice(TAILS)}"
    return AN.sub(r"an \1", title[0].upper() + title[1:])


def make_sentence(rng: random.Random, topic: str, year: int) -> str:
    """One plausible sentence of tech reporting about the topic."""
    return rng.choice(SENTENCES).format(
        c=rng.choice(COMPANIES[:36]), day=rng.choice(DAYS), v=rng.choice(ACTIONS),
        x=f"its {topic} products", t=topic, n=rng.randrange(2, 60), y=year - 1,
        y2=year + rng.randrange(3, 8), place=rng.choice(PLACES),
    )


def make_excerpt(rng: random.Random, topic: str, year: int) -> str:
    """An outlet's summary: two or three sentences, often cut off with an ellipsis."""
    text = " ".join(make_sentence(rng, topic, year) for _ in range(rng.randrange(2, 4)))
    if rng.random() < 0.5 and len(text) > 200:
        text = text[:200].rsplit(" ", 1)[0] + " ..."
    return text


def pick_topics(rng: random.Random) -> list[str]:
    """1-4 distinct topics, most stories having 2 or 3."""
    count = rng.choices((1, 2, 3, 4), weights=(2, 4, 3, 1))[0]
    chosen: list[str] = []
    while len(chosen) < count:
        topic = rng.choices(TOPICS, cum_weights=TOPIC_WEIGHTS)[0]
        if topic not in chosen:
            chosen.append(topic)
    return chosen


def pick_provider(rng: random.Random) -> tuple[str, str]:
    """An outlet, the big ones far more often than the small ones."""
    return rng.choices(PROVIDERS, cum_weights=PROVIDER_WEIGHTS)[0]


def article_url(rng: random.Random, domain: str, when: datetime, slug: str) -> str:
    """A URL in one of the shapes outlets use."""
    shape = rng.randrange(3)
    if shape == 0:
        return f"https://www.{domain}/{when:%Y/%m/%d}/{slug}/"
    if shape == 1:
        return f"https://www.{domain}/news/{slug}-{rng.randrange(10**7, 10**8)}"
    return f"https://{domain}/{when:%Y%m}/{slug}.html"


def image_meta(rng: random.Random, domain: str, when: datetime) -> tuple[str, int, int]:
    """A remote image URL with plausible pixel dimensions."""
    width = rng.choice((480, 640, 800, 1024, 1200, 1280, 1400, 1600, 2048))
    aspect_w, aspect_h = rng.choice(ASPECTS)
    digest = hashlib.sha1(f"{domain}{when}{rng.random()}".encode()).hexdigest()[:16]
    url = f"https://cdn.{domain}/uploads/{when:%Y/%m}/{digest}.jpg"
    return url, width, width * aspect_h // aspect_w


def make_head(seed: int, index: int, used: set[str]) -> Head:
    """The headline, date, outlet and URL of one story; the slug is made unique in index order."""
    rng = story_rng(seed, index, "head")
    published = EPOCH + timedelta(minutes=rng.randrange(SPAN_DAYS * 24 * 60))
    topic = rng.choices(TOPICS, cum_weights=TOPIC_WEIGHTS)[0]
    title = make_title(rng, topic)
    slug = base = slugify(title)
    for number in itertools.count(2):
        if slug not in used:
            break
        slug = f"{base}-{number}"
    used.add(slug)
    provider = pick_provider(rng)
    return Head(
        index=index, slug=slug, title=title,
        excerpt=make_excerpt(rng, topic, published.year), published=published,
        url=article_url(rng, provider[1], published, slug), provider=provider,
        quality=int(rng.lognormvariate(3.6, 0.8)),
        image=image_meta(rng, provider[1], published),
    )


def stamp(when: datetime) -> str:
    """The front matter's date-time form: 2020-01-24T18:24:00Z."""
    return when.strftime("%Y-%m-%dT%H:%M:00Z")


def image_lines(image: tuple[str, int, int], indent: str, title: str | None) -> list[str]:
    """An `images:` list of one image."""
    url, width, height = image
    lines = [f"{indent}images:", f"{indent}  - url: {quote(url)}",
             f"{indent}    width: {width}", f"{indent}    height: {height}"]
    if title is not None:
        lines.append(f"{indent}    title: {quote(title)}")
    return lines


def amp_lines(rng: random.Random, url: str) -> list[str]:
    """ampWebUrl and cdnAmpWebUrl, which about half the outlets publish."""
    if rng.random() >= 0.55:
        return []
    amp = url.rstrip("/") + "/amp/"
    host, path = amp.split("://", 1)[1].split("/", 1)
    cdn = f"https://{host.replace('.', '-')}.cdn.ampproject.org/c/s/{host}/{path}"
    return [f"    ampWebUrl: {quote(amp)}", f"    cdnAmpWebUrl: {quote(cdn)}"]


def related_item(rng: random.Random, head: Head, topic: str) -> list[str]:
    """Another outlet's coverage of the same story, written fresh for this story."""
    provider = pick_provider(rng)
    when = head.published + timedelta(minutes=rng.randrange(-3 * 1440, 5 * 1440))
    title = make_title(rng, topic)
    url = article_url(rng, provider[1], when, slugify(title))
    lines = [
        f"  - title: {quote(title)}",
        f"    excerpt: {quote(make_excerpt(rng, topic, when.year))}",
        f"    publishedDateTime: {stamp(when)}",
        f"    webUrl: {quote(url)}",
        *amp_lines(rng, url),
        "    type: article",
        "    provider:",
        f"      name: {provider[0]}",
        f"      domain: {provider[1]}",
        f"    quality: {int(rng.lognormvariate(3.6, 0.9))}",
    ]
    if rng.random() < 0.9:
        lines += image_lines(image_meta(rng, provider[1], when), "    ", None)
    return lines


def cited_story(rng: random.Random, other: Head) -> list[str]:
    """A related item that is another story of the corpus, as the importer folds them."""
    return [
        f"  - title: {quote(other.title)}",
        f"    excerpt: {quote(other.excerpt)}",
        f"    publishedDateTime: {stamp(other.published)}",
        f"    webUrl: {quote(other.url)}",
        *amp_lines(rng, other.url),
        "    type: article",
        "    provider:",
        f"      name: {other.provider[0]}",
        f"      domain: {other.provider[1]}",
        f"    quality: {other.quality}",
        *image_lines(other.image, "    ", None),
    ]


def neighbours(
    heads: list[Head], order: list[int], dates: list[datetime], head: Head
) -> list[Head]:
    """Stories published within about a week of this one (the candidates to cite).

    `dates` are the publish times in `order`, for bisecting.
    """
    low = bisect.bisect_left(dates, head.published - timedelta(days=7))
    high = bisect.bisect_right(dates, head.published + timedelta(days=7))
    return [heads[i] for i in order[low:high] if i != head.index]


def related_lines(rng: random.Random, head: Head, topics: list[str], near: list[Head]) -> list[str]:
    """10-35 related items (mostly 10-20), about one in five another story of the corpus."""
    lines = ["related:"]
    for _ in range(round(rng.triangular(10, 35, 10))):
        if near and rng.random() < 0.2:
            lines += cited_story(rng, rng.choice(near))
        else:
            lines += related_item(rng, head, rng.choice(topics))
    return lines


def body_lines(rng: random.Random, head: Head, topics: list[str]) -> list[str]:
    """The curator's note: a few paragraphs with links, emphasis and sometimes a list."""
    year = head.published.year
    paragraphs = []
    for number in range(rng.randrange(2, 5)):
        count = rng.randrange(2, 5)
        sentences = [make_sentence(rng, rng.choice(topics), year) for _ in range(count)]
        if number == 0:
            outlet = head.provider[0]
            sentences.insert(0, f"[{outlet}]({head.url}) has the *{topics[0]}* story of the week.")
        elif rng.random() < 0.5:
            sentences.append(f"**Why it matters:** {make_sentence(rng, topics[-1], year)}")
        paragraphs.append(" ".join(sentences))
    if rng.random() < 0.25:
        count = rng.randrange(3, 6)
        items = [f"- {make_sentence(rng, rng.choice(topics), year)}" for _ in range(count)]
        paragraphs.insert(rng.randrange(1, len(paragraphs) + 1), "\n".join(items))
    return "\n\n".join(paragraphs).split("\n")


def story_text(seed: int, head: Head, near: list[Head]) -> str:
    """The whole file of one story: front matter as curators write it, then the note."""
    rng = story_rng(seed, head.index, "body")
    topics = pick_topics(rng)
    heat = [f"heat: {rng.choice((-1, rng.randrange(0, 100)))}"] if rng.random() < 0.5 else []
    pick = ["editor_pick: true"] if rng.random() < 0.02 else []
    images = image_lines(head.image, "", head.title)
    if rng.random() < 0.1:
        extra = image_meta(rng, head.provider[1], head.published)
        images += image_lines(extra, "", head.title)[1:]
    secured = base64.b64encode(rng.randbytes(rng.randrange(150, 260))).decode()
    lines = [
        "---",
        f"category: {rng.choice(('news', 'news', 'news', 'analysis', 'opinion'))}",
        f"title: {quote(head.title)}",
        f"excerpt: {quote(head.excerpt)}",
        f"publishedDateTime: {stamp(head.published)}",
        f"webUrl: {quote(head.url)}",
        "type: article",
        f"quality: {head.quality}",
        *heat, *pick,
        "",
        "provider:",
        f"  name: {head.provider[0]}",
        f"  domain: {head.provider[1]}",
        "",
        "topics:",
        *(f"  - {topic}" for topic in topics),
        "",
        *images,
        "",
        *related_lines(rng, head, topics, near),
        "",
        f"secured: {quote(secured)}",
        "---",
        "",
        *body_lines(rng, head, topics),
    ]
    return "\n".join(lines) + "\n"


def story_path(head: Head) -> str:
    """content/YYYY-MM/<slug>.md, as the sample site files its stories."""
    return f"content/{head.published:%Y-%m}/{head.slug}.md"


def site_yaml(count: int) -> str:
    """Broadsheet's settings for the corpus: weekly issues from EPOCH, no downloads, no search."""
    return f"""\
# The benchmark corpus of bench/corpus.py: {count} generated stories. Do not edit.
title: Broadsheet benchmark
description: A generated corpus of {count} tech news stories for bench/run.py.
base_url: https://example.org/
language: en
timezone: UTC
author: Broadsheet benchmark
search: false

images:
  fetch: false

issues:
  period: weekly
  epoch: {EPOCH:%Y-%m-%d}

topics:
  page_size: 20

home:
  stories: 12
  recent_issues: 8
"""


def week_of(when: datetime) -> int:
    """The weekly issue number of a time: weeks since EPOCH plus one."""
    return (when - EPOCH).days // 7 + 1


def build_heads(count: int, seed: int) -> tuple[list[Head], list[int]]:
    """Every story's head, and the indices in publishing order (oldest first)."""
    used: set[str] = {NEW_STORY}
    heads = [make_head(seed, index, used) for index in range(count)]
    order = sorted(range(count), key=lambda i: (heads[i].published, i))
    return heads, order


def new_story(count: int, seed: int) -> tuple[str, str]:
    """The story run.py adds: same generator, dated in the corpus's last week with stories.

    It never opens a new week, so the peers that are told the list of weeks up front (Hugo)
    stay exact.
    """
    heads, order = build_heads(count, seed)
    latest = heads[order[-1]]
    when = max(latest.published - timedelta(minutes=1), EPOCH)
    head = replace(make_head(seed, count, set()), slug=NEW_STORY, published=when)
    return f"content/{when:%Y-%m}/{NEW_STORY}.md", story_text(seed, head, [latest])


def generate(count: int, out: Path, seed: int) -> dict[str, object]:
    """Write the corpus into `out` (replacing its content/) and return its manifest."""
    heads, order = build_heads(count, seed)
    if (out / "content").exists():
        shutil.rmtree(out / "content")
    dates = [heads[i].published for i in order]
    line_counts = []
    for head in heads:
        text = story_text(seed, head, neighbours(heads, order, dates, head))
        path = out / story_path(head)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        line_counts.append(text.split("\n---\n", 1)[0].count("\n") + 2)
    (out / "site.yaml").write_text(site_yaml(count), encoding="utf-8")
    manifest = manifest_for(count, seed, heads, order, line_counts)
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def manifest_for(
    count: int, seed: int, heads: list[Head], order: list[int], line_counts: list[int]
) -> dict[str, object]:
    """What run.py needs without reading the stories: weeks, the story to edit, sizes."""
    edit = heads[order[len(order) // 2]] if heads else None
    return {
        "stories": count,
        "seed": seed,
        "generator": generator_digest(),
        "epoch": f"{EPOCH:%Y-%m-%d}",
        "weeks": sorted({week_of(h.published) for h in heads}),
        "first": stamp(heads[order[0]].published) if heads else None,
        "last": stamp(heads[order[-1]].published) if heads else None,
        "edit_story": story_path(edit) if edit else None,
        "front_matter_lines_mean": round(sum(line_counts) / max(len(line_counts), 1), 1),
        "front_matter_lines_max": max(line_counts, default=0),
    }


def generator_digest() -> str:
    """A hash of this file: a cached corpus made by another version is made again."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    """Command line: python bench/corpus.py N [--out DIR] [--seed S]."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, metavar="N", help="number of stories")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"default: {DEFAULT_WORKDIR}/corpus-N-seedS, where run.py looks")
    parser.add_argument("--seed", type=int, default=1, help="default: 1")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("N must be at least 1")
    out = args.out or DEFAULT_WORKDIR / f"corpus-{args.count}-seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    manifest = generate(args.count, out, args.seed)
    print(
        f"{args.count} stories in {out}/content, {len(manifest['weeks'])} weekly issues "  # type: ignore[arg-type]
        f"({manifest['first']} to {manifest['last']}), "
        f"{manifest['front_matter_lines_mean']} front matter lines on average"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
