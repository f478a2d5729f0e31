// Lists a feed's columns in its grant row's column chooser as soon as the
// feed is typed, from /admin/lbasedb/feed/<feed>/columns/ (only the columns
// the signed-in user may see). Without JavaScript the form still works:
// saving the form and opening it again lists them from the server.
(function () {
  "use strict";
  function fill(select, row, names) {
    var chosen = {};
    Array.prototype.forEach.call(select.options, function (o) {
      if (o.selected) { chosen[o.value] = true; }
    });
    select.innerHTML = "";
    names.forEach(function (name) {
      var option = document.createElement("option");
      option.value = row + ":" + name;
      option.textContent = name;
      option.selected = !!chosen[option.value];
      select.appendChild(option);
    });
  }
  document.querySelectorAll("input.grant-feed").forEach(function (input) {
    input.addEventListener("change", function () {
      var row = input.getAttribute("data-row");
      var select = document.querySelector('select.grant-columns[data-row="' + row + '"]');
      var feed = input.value.trim();
      if (!select || !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(feed)) { return; }
      fetch("/admin/lbasedb/feed/" + encodeURIComponent(feed) + "/columns/", {
        credentials: "same-origin",
        headers: { "Accept": "application/json" }
      }).then(function (response) {
        return response.ok ? response.json() : [];
      }).then(function (names) {
        fill(select, row, names);
      }).catch(function () {});
    });
  });
})();
