// Turns each <select multiple class="chooser"> into two lists (available,
// chosen) with a filter box, like Django's filter_horizontal. Without
// JavaScript the plain multi-select still works; the select stays the
// form's field, so what is submitted is the same either way.
(function () {
  "use strict";
  function build(select) {
    var wrap = document.createElement("div");
    wrap.className = "chooser-wrap";
    var filter = document.createElement("input");
    filter.type = "search";
    filter.placeholder = "Filter";
    filter.setAttribute("aria-label", "Filter the available choices");
    var available = document.createElement("select");
    available.multiple = true;
    available.className = "chooser-available";
    available.setAttribute("aria-label", "Available");
    var chosen = document.createElement("select");
    chosen.multiple = true;
    chosen.className = "chooser-chosen";
    chosen.setAttribute("aria-label", "Chosen");
    var add = document.createElement("button");
    add.type = "button";
    add.className = "button chooser-add";
    add.textContent = "Choose →";
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button chooser-remove";
    remove.textContent = "← Remove";
    function render() {
      var term = filter.value.toLowerCase();
      available.innerHTML = "";
      chosen.innerHTML = "";
      Array.prototype.forEach.call(select.options, function (option) {
        var copy = document.createElement("option");
        copy.value = option.value;
        copy.textContent = option.textContent;
        if (option.selected) {
          chosen.appendChild(copy);
        } else if (option.textContent.toLowerCase().indexOf(term) !== -1) {
          available.appendChild(copy);
        }
      });
    }
    function move(from, selected) {
      var values = Array.prototype.filter.call(from.options, function (o) { return o.selected; })
        .map(function (o) { return o.value; });
      Array.prototype.forEach.call(select.options, function (option) {
        if (values.indexOf(option.value) !== -1) { option.selected = selected; }
      });
      render();
    }
    add.addEventListener("click", function () { move(available, true); });
    remove.addEventListener("click", function () { move(chosen, false); });
    available.addEventListener("dblclick", function () { move(available, true); });
    chosen.addEventListener("dblclick", function () { move(chosen, false); });
    filter.addEventListener("input", render);
    var buttons = document.createElement("div");
    buttons.className = "chooser-buttons";
    buttons.appendChild(add);
    buttons.appendChild(remove);
    var left = document.createElement("div");
    left.appendChild(filter);
    left.appendChild(available);
    wrap.appendChild(left);
    wrap.appendChild(buttons);
    wrap.appendChild(chosen);
    select.hidden = true;
    select.parentNode.insertBefore(wrap, select.nextSibling);
    render();
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("select.chooser"), build);
  });
})();
