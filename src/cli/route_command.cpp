#include "cli/route_command.h"

#include <iostream>

#include "base/text.h"
#include "config/loader.h"
#include "policy/route_rules.h"
#include "policy/sender_policy.h"

namespace mb::cli {

RouteCommand::RouteCommand(CLI::App& parent) {
  route_ = parent.add_subcommand("route", "Show which provider and sending mailbox a message would get.");
  route_->add_option("--from", from_, "MAIL FROM address (empty for <>)")->required()->type_name("A");
  route_->add_option("--to", to_, "Recipient (repeat for several)")->required()->type_name("B");
  route_->add_option("--user", user_, "The SMTP AUTH user, if any")->type_name("U");
  route_->add_option("--listener", listener_, "The listener the message comes in on")->type_name("NAME");
  route_->add_option("-c,--config", config_path_, "Configuration file (YAML)")->required()->type_name("FILE");
  route_->footer("\nExit codes: 0 routed, 1 the sender would be refused, 2 usage or configuration error.\n");
}

int RouteCommand::run() {
  config::Config config;
  try {
    config = config::loadConfigFile(config_path_, config::LoadOptions{.read_secrets = false});
  } catch (const config::ConfigError& e) {
    for (const auto& issue : e.issues()) std::cerr << issue.format() << '\n';
    std::cerr << "route: the configuration has errors\n";
    return 2;
  }
  const config::UserConfig* user = nullptr;
  for (const auto& u : config.auth.users) {
    if (u.name == user_) user = &u;
  }
  if (!user_.empty() && user == nullptr) {
    std::cout << "note: no user '" << printable(user_) << "' in auth.users (an Entra ID user with auth_mode "
              << "user_password, or a typo)\n";
  }
  const policy::SenderPolicy senders(config.senders);
  const auto decision = senders.decide(from_, user);
  if (!decision.allowed) {
    std::cout << "refused: MAIL FROM:<" << printable(from_) << "> would get 550 5.7.1 (" << decision.reason << ")\n";
    return 1;
  }
  const std::string& mailbox = decision.effective_sender;
  const policy::RouteRules rules(config.routes);
  const auto choice = rules.choose(mailbox, user_, listener_, to_);
  const config::ProviderConfig* provider = config.providers.empty() ? nullptr : &config.providers.front();
  for (const auto& p : config.providers) {
    if (!choice.provider.empty() && p.name == choice.provider) provider = &p;
  }
  if (provider == nullptr) {
    std::cerr << "route: no provider\n";
    return 2;
  }
  std::cout << "provider: " << provider->name << " (" << config::providerTypeName(provider->type) << "), "
            << (choice.rule ? "by routes[" + std::to_string(*choice.rule) + "]"
                            : std::string(config.routes.empty() ? "the first provider (no routes:)"
                                                                : "the first provider (no route matched)"))
            << '\n';
  std::cout << "mailbox: " << (mailbox.empty() ? std::string("<> (the From header's address)") : printable(mailbox));
  if (decision.overridden) std::cout << " (" << decision.reason << ")";
  std::cout << '\n';
  if (config.senders.use_from_header && !decision.overridden) {
    std::cout << "note: senders.use_from_header is on: a From header in the message names the mailbox, if the "
                 "sender lists allow it\n";
  }
  return 0;
}

}  // namespace mb::cli
