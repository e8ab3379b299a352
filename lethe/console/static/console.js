// A page that shows work in progress reloads itself until the work is done.
document.addEventListener("DOMContentLoaded", () => {
  const marker = document.querySelector("[data-refresh]");
  if (marker) {
    const seconds = Number(marker.getAttribute("data-refresh")) || 2;
    window.setTimeout(() => window.location.reload(), seconds * 1000);
  }
});
