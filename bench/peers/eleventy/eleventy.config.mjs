// Eleventy settings for the benchmark peer. bench/run.py copies this folder into its work
// folder and links the corpus's content/ into it, so Eleventy reads the same story files
// (YAML front matter through Eleventy's own gray-matter/js-yaml, bodies through markdown-it).
// Lists are computed once per build in collections; every list page only looks them up.

const EPOCH = Date.parse("2021-01-04T00:00:00Z"); // issue 1's Monday (issues.epoch)
const WEEK_MS = 7 * 24 * 3600 * 1000;
const TOPIC_PAGE_SIZE = 20;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

const weekOf = (date) => Math.floor((date - EPOCH) / WEEK_MS) + 1;
const newestFirst = (a, b) => b.data.publishedDateTime - a.data.publishedDateTime;
const shortDate = (date) =>
  `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()}`;

function chunk(items, size) {
  const chunks = [];
  for (let start = 0; start < items.length; start += size) {
    chunks.push(items.slice(start, start + size));
  }
  return chunks;
}

// Every page of every topic: [{name, slug, number, total, stories}], one pass over the stories.
function topicPages(stories, slugify) {
  const byTopic = new Map();
  for (const story of stories) {
    for (const name of story.data.topics || []) {
      if (!byTopic.has(name)) byTopic.set(name, []);
      byTopic.get(name).push(story);
    }
  }
  const pages = [];
  for (const name of [...byTopic.keys()].sort()) {
    const chunks = chunk(byTopic.get(name), TOPIC_PAGE_SIZE);
    chunks.forEach((items, index) => {
      pages.push({ name, slug: slugify(name), number: index + 1, total: chunks.length, stories: items });
    });
  }
  return pages;
}

// Every weekly issue, newest first: [{number, stories (ranked), newer, older}].
function issues(stories) {
  const byWeek = new Map();
  for (const story of stories) {
    const number = weekOf(story.data.publishedDateTime);
    if (!byWeek.has(number)) byWeek.set(number, []);
    byWeek.get(number).push(story);
  }
  const numbers = [...byWeek.keys()].sort((a, b) => b - a);
  return numbers.map((number, index) => ({
    number,
    stories: byWeek.get(number).sort((a, b) => (b.data.quality || 0) - (a.data.quality || 0) || newestFirst(a, b)),
    newer: index > 0 ? numbers[index - 1] : null,
    older: index + 1 < numbers.length ? numbers[index + 1] : null,
  }));
}

export default function (eleventyConfig) {
  const slugify = eleventyConfig.getFilter("slugify");
  eleventyConfig.addFilter("week", weekOf);
  eleventyConfig.addFilter("shortdate", shortDate);
  eleventyConfig.addFilter("isodate", (date) => date.toISOString());
  eleventyConfig.addFilter("rfc822", (date) => date.toUTCString());
  eleventyConfig.addFilter("head", (items, count) => items.slice(0, count));
  eleventyConfig.addFilter("topicslug", (name) => slugify(name));

  // The stories (content/**/*.md) carry no permalink or layout: these defaults are theirs;
  // the pages under pages/ set their own.
  eleventyConfig.addGlobalData("layout", "story.njk");
  eleventyConfig.addGlobalData("permalink", () => (data) => `/stories/${data.page.fileSlug}/`);

  eleventyConfig.addCollection("stories", (api) =>
    api.getFilteredByGlob("content/**/*.md").sort(newestFirst));
  eleventyConfig.addCollection("topicPages", (api) =>
    topicPages(api.getFilteredByGlob("content/**/*.md").sort(newestFirst), slugify));
  eleventyConfig.addCollection("issues", (api) =>
    issues(api.getFilteredByGlob("content/**/*.md")));

  return {
    dir: { input: ".", includes: "_includes", output: "_site" },
    templateFormats: ["md", "njk"],
    markdownTemplateEngine: false,
    htmlTemplateEngine: "njk",
  };
}
