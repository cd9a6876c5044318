// Starts Pagefind's search box on the search page; the page works without it (topic list).
window.addEventListener("DOMContentLoaded", () => {
  const element = document.getElementById("search");
  if (!element || typeof PagefindUI === "undefined") return;
  new PagefindUI({
    element: "#search",
    showSubResults: true,
    showImages: false,
    translations: { placeholder: element.dataset.placeholder || "Search" },
  });
  // Give the box a visible label, tied to its input (Pagefind's has only a placeholder).
  const input = element.querySelector("input");
  const label = document.getElementById("search-label");
  if (input && label) {
    input.id = "search-input";
    label.htmlFor = "search-input";
    label.hidden = false;
  }
});
