// Any script error or failed resource load is recorded in the root element's data-errors attribute,
// so a headless browser test can see it in the DOM as well as on the console.
window.addEventListener("error", function (event) {
  var root = document.documentElement;
  var what = event.message || ("failed to load " + ((event.target && (event.target.src || event.target.href)) || "?"));
  root.dataset.errors = (root.dataset.errors ? root.dataset.errors + " | " : "") + what;
}, true);
document.addEventListener("DOMContentLoaded", function () {
  var buttons = document.querySelectorAll(".filters button");
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      var problems = button.dataset.filter === "problems";
      document.body.classList.toggle("only-problems", problems);
      buttons.forEach(function (other) { other.classList.toggle("on", other === button); });
    });
  });
  // Tracebacks and log tails end with what matters: show their last lines.
  document.querySelectorAll("pre.tail").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
  document.documentElement.dataset.rendered = String(document.querySelectorAll("svg.timeline").length);
});
