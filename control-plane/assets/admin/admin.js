// かかない 管理画面 — small progressive enhancements; every page works without them.
"use strict";
document.documentElement.classList.add("has-js");
document.addEventListener("DOMContentLoaded", function () {
  // Fleet: filter the device table as one types (counter name, location, id).
  var filter = document.getElementById("device-filter");
  var table = document.getElementById("devices");
  if (filter && table) {
    filter.addEventListener("input", function () {
      var q = filter.value.trim().toLowerCase();
      table.querySelectorAll("tbody tr").forEach(function (tr) {
        tr.hidden = q !== "" && tr.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  }
  // Forms that change a lot ask once before sending (data-confirm="message").
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
});
